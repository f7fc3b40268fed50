"""The built-in "shapes world": a small synthetic vision-language corpus in the real public formats.

Scenes of 1-4 coloured shapes (:mod:`.scenes`, named with the words of :mod:`.vocabulary` and
:mod:`.phrases`) are rendered with Pillow (:mod:`.render`) and described by captions full of synonyms and
spatial relations (:mod:`.captions`), so a masked word often has several right answers while changing one
word usually describes a different scene; the same scenes get VQA/GQA questions (:mod:`.questions`),
NLVR2 statements (:mod:`.nlvr2_statements`), SNLI-VE hypotheses (:mod:`.snli_hypotheses`) and region features
(:mod:`.features`), which :mod:`.writers` write in exactly the public layouts, so the demo goes through
the real readers in :mod:`vlp.data.formats`; :func:`write_shapes_world` (:mod:`.world`) writes it all.
Everything is a pure function of the seed: the same :class:`SynthConfig` writes byte-identical files,
and each part draws from its own random stream (:func:`.config.part_rng`: seed, part, image), so adding
a question kind does not change the images or the captions.
"""

from vlp.data.synthetic.captions import caption_tokens, make_captions
from vlp.data.synthetic.config import SynthConfig
from vlp.data.synthetic.features import region_embeddings
from vlp.data.synthetic.nlvr2_statements import NLVR2_TEMPLATES, make_nlvr2_sentences
from vlp.data.synthetic.scenes import Scene, SceneObject, assign_splits, relation, sample_scene, unique_naming
from vlp.data.synthetic.snli_hypotheses import SNLI_LABELS
from vlp.data.synthetic.vocabulary import COLOUR_RGB, COLOUR_WORDS, COLOURS, SHAPE_WORDS, SHAPES, SIZE_WORDS
from vlp.data.synthetic.world import WORLD_PARTS, WorldSummary, write_shapes_world

__all__ = [
    "COLOURS",
    "COLOUR_RGB",
    "COLOUR_WORDS",
    "NLVR2_TEMPLATES",
    "SHAPES",
    "SHAPE_WORDS",
    "SIZE_WORDS",
    "SNLI_LABELS",
    "WORLD_PARTS",
    "Scene",
    "SceneObject",
    "SynthConfig",
    "WorldSummary",
    "assign_splits",
    "caption_tokens",
    "make_captions",
    "make_nlvr2_sentences",
    "region_embeddings",
    "relation",
    "sample_scene",
    "unique_naming",
    "write_shapes_world",
]
