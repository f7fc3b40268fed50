"""The vocabulary of the shapes world: its shapes, colours, sizes and relations, and their synonyms.

Scenes are made of these attributes, and every text (captions, questions, statements, hypotheses) names
them with the words here, the first word of each tuple being the most frequent. The pixels of each
colour and the irregular plurals live here too.
"""

from __future__ import annotations

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
SIZES = ("small", "large")

COLOUR_RGB = {
    "red": (200, 35, 35),
    "green": (40, 150, 60),
    "blue": (40, 70, 200),
    "yellow": (230, 200, 40),
    "purple": (130, 50, 165),
    "orange": (240, 130, 30),
}
# Words a caption may use; the first is the most frequent (half of the time).
SHAPE_WORDS = {
    "circle": ("circle", "ball", "disk"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle", "pyramid", "wedge"),
    "diamond": ("diamond", "rhombus", "lozenge"),
    "cross": ("cross", "plus"),
}
COLOUR_WORDS = {
    "red": ("red", "crimson", "scarlet"),
    "green": ("green", "emerald"),
    "blue": ("blue", "cobalt"),
    "yellow": ("yellow", "golden"),
    "purple": ("purple", "violet"),
    "orange": ("orange", "amber"),
}
SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big", "huge")}
RELATION_WORDS = {
    "left": ("to the left of", "left of", "on the left of"),
    "right": ("to the right of", "right of", "on the right of"),
    "above": ("above", "over", "on top of"),
    "below": ("below", "under", "beneath"),
}
OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")
PLURALS = {"box": "boxes", "cross": "crosses", "plus": "pluses", "rhombus": "rhombuses"}
