"""VQA answer normalisation, exactly as the official VQA evaluation script normalises answers.

Rules of ``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` (GT-Vision-Lab/VQA), quirks included:
newlines and tabs to spaces, strip, punctuation, then lower-case, number words to digits, articles
dropped, contractions restored. The format readers normalise answers with it (the answer vocabulary)
and :mod:`vlp.metrics` scores predictions with it.
"""

from __future__ import annotations

import re

# Characters removed, or turned into a space, by the punctuation step. The apostrophe, the colon and
# the period are not in the list (periods have their own rule below).
_PUNCTUATION = ';/[]"{}()=+\\_-><@`,?!'
# A comma between two digits anywhere in the answer ("1,000") switches every punctuation character from
# "replace by a space" to "delete".
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
# A period not followed by a digit is deleted ("3.5" keeps its period). The official call passes
# ``re.UNICODE`` (== 32) positionally as the substitution count, so at most 32 periods go; we keep that.
_PERIOD = re.compile(r"\.(?!\d)")
_PERIOD_MAX_SUBSTITUTIONS = 32

_NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = frozenset({"a", "an", "the"})

# The official contraction table: a word equal to a key becomes the value. It is applied after
# lower-casing, so the few capitalised keys never match; they are kept to mirror the table as published
# (as is its odd "somebody'd" -> "somebodyd" entry).
_CONTRACTIONS_TABLE = """
aint ain't | arent aren't | cant can't | couldve could've | couldnt couldn't | couldn'tve couldn't've
couldnt've couldn't've | didnt didn't | doesnt doesn't | dont don't | hadnt hadn't | hadnt've hadn't've
hadn'tve hadn't've | hasnt hasn't | havent haven't | hed he'd | hed've he'd've | he'dve he'd've | hes he's
howd how'd | howll how'll | hows how's | Id've I'd've | I'dve I'd've | Im I'm | Ive I've | isnt isn't
itd it'd | itd've it'd've | it'dve it'd've | itll it'll | let's let's | maam ma'am | mightnt mightn't
mightnt've mightn't've | mightn'tve mightn't've | mightve might've | mustnt mustn't | mustve must've
neednt needn't | notve not've | oclock o'clock | oughtnt oughtn't | ow's'at 'ow's'at | 'ows'at 'ow's'at
'ow'sat 'ow's'at | shant shan't | shed've she'd've | she'dve she'd've | she's she's | shouldve should've
shouldnt shouldn't | shouldnt've shouldn't've | shouldn'tve shouldn't've | somebody'd somebodyd
somebodyd've somebody'd've | somebody'dve somebody'd've | somebodyll somebody'll | somebodys somebody's
someoned someone'd | someoned've someone'd've | someone'dve someone'd've | someonell someone'll
someones someone's | somethingd something'd | somethingd've something'd've | something'dve something'd've
somethingll something'll | thats that's | thered there'd | thered've there'd've | there'dve there'd've
therere there're | theres there's | theyd they'd | theyd've they'd've | they'dve they'd've | theyll they'll
theyre they're | theyve they've | twas 'twas | wasnt wasn't | wed've we'd've | we'dve we'd've | weve we've
werent weren't | whatll what'll | whatre what're | whats what's | whatve what've | whens when's
whered where'd | wheres where's | whereve where've | whod who'd | whod've who'd've | who'dve who'd've
wholl who'll | whos who's | whove who've | whyll why'll | whyre why're | whys why's | wont won't
wouldve would've | wouldnt wouldn't | wouldnt've wouldn't've | wouldn'tve wouldn't've | yall y'all
yall'll y'all'll | y'allll y'all'll | yall'd've y'all'd've | y'alld've y'all'd've | y'all'dve y'all'd've
youd you'd | youd've you'd've | you'dve you'd've | youll you'll | youre you're | youve you've
"""
CONTRACTIONS: dict[str, str] = dict(
    pair.split() for pair in _CONTRACTIONS_TABLE.replace("\n", " | ").split("|") if pair.strip()
)


def process_punctuation(text: str) -> str:
    """The official punctuation step (no lower-casing, no word mapping)."""
    delete_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in _PUNCTUATION:
        # Whether a mark is deleted or spaced out is decided on the input text, as the official code does.
        if delete_all or mark + " " in text or " " + mark in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD.sub("", out, count=_PERIOD_MAX_SUBSTITUTIONS)


def process_digits_articles(text: str) -> str:
    """The official word step: lower-case, number words to digits, drop articles, restore contractions."""
    words = []
    for word in text.lower().split():
        word = _NUMBER_WORDS.get(word, word)
        if word not in _ARTICLES:
            words.append(CONTRACTIONS.get(word, word))
    return " ".join(words)


def normalize_answer(text: str) -> str:
    """Normalise an answer exactly as the official VQA evaluation normalises a prediction.

    >>> normalize_answer("The two dogs!")
    '2 dogs'
    """
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digits_articles(process_punctuation(text))
