"""Built-in synthetic two-domain faces: one set of face parameters, two drawing styles.

:func:`render` draws a :class:`FaceParams` either as a "photo" (realistic
proportions, soft shading, small eyes, sensor noise, subdued colours) or as an
"anime" face (big cranium, tall eyes with highlights, pointed chin, flat cel
colours with one hard shadow tone, dark line art, spiky hair). The identity
traits (hair colour and style, eye colour, skin tone, mouth, pose, background,
clothes, glasses) are the same in both, while shapes and shading differ, so a
translation model has to learn a real mapping, not a colour shift.

:func:`generate_dataset` writes unpaired training folders and a paired test
set whose parameters are saved, so translation and cross-domain search can be
scored against ground truth (:func:`load_test_params`, :func:`hair_colour_of`),
and the training folders carry ``labels.csv`` files (:data:`SYNTHETIC_ATTRIBUTES`)
for attribute-conditioned training.
Everything is deterministic: parameters come from per-index seeds derived from
the dataset seed, and rendering uses no global random state.

The modules, one idea each: ``palettes`` (the named colours and how each style shifts them), ``params`` (a face's
parameters and their sampling), ``colour_classifier`` (reading the hair colour back), ``drawing`` (what both
painters share), ``photo_painter`` and ``anime_painter``, ``rendering`` (one face, one style, one size) and
``dataset_writer`` (the folders on disk).
"""
from twingan.data.synthetic.colour_classifier import HAIR_PROBE_BOX, hair_colour_of, hair_palette
from twingan.data.synthetic.dataset_writer import (
    GENERATOR_VERSION,
    LABELS_NAME,
    MANIFEST_NAME,
    TEST_PARAMS_NAME,
    GenerationSummary,
    generate_dataset,
    load_test_params,
    train_labels_csv,
)
from twingan.data.synthetic.palettes import (
    BACKGROUND_COLOURS,
    EYE_COLOURS,
    HAIR_COLOURS,
    PHOTO_SATURATION,
    SHIRT_COLOURS,
    SKIN_TONES,
    STYLES,
)
from twingan.data.synthetic.params import (
    BACKGROUND_TYPES,
    EYE_COLOUR_NAMES,
    GLASSES_PROBABILITY,
    GLASSES_VALUES,
    HAIR_COLOUR_NAMES,
    HAIR_STYLES,
    MOUTHS,
    ROLL_RANGE_DEG,
    SCALE_RANGE,
    SYNTHETIC_ATTRIBUTES,
    YAW_RANGE,
    FaceParams,
    attribute_values,
    params_for_index,
    sample_params,
)
from twingan.data.synthetic.rendering import MAX_SIZE, MIN_SIZE, render

__all__ = [
    "BACKGROUND_COLOURS", "BACKGROUND_TYPES", "EYE_COLOURS", "EYE_COLOUR_NAMES", "GENERATOR_VERSION",
    "GLASSES_PROBABILITY", "GLASSES_VALUES", "HAIR_COLOURS", "HAIR_COLOUR_NAMES", "HAIR_PROBE_BOX", "HAIR_STYLES",
    "LABELS_NAME", "MANIFEST_NAME", "MAX_SIZE", "MIN_SIZE", "MOUTHS", "PHOTO_SATURATION", "ROLL_RANGE_DEG",
    "SCALE_RANGE", "SHIRT_COLOURS", "SKIN_TONES", "STYLES", "SYNTHETIC_ATTRIBUTES", "TEST_PARAMS_NAME", "YAW_RANGE",
    "FaceParams", "GenerationSummary", "attribute_values", "generate_dataset", "hair_colour_of", "hair_palette",
    "load_test_params", "params_for_index", "render", "sample_params", "train_labels_csv",
]
