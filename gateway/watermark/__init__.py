"""Keyed lexical watermark on assistant text (issue 5, output perturbation).

A post-hoc synonym / variant substitution in the spirit of He et al. (2022) and
CATER: at each *position* (a word of the curated table in `variants.txt`, outside
code, quotes, JSON, URLs, numbers and markup), a keyed hash of the local context
decides which member of the word's set to write. Half the positions carry a
deployment mark (key from the deployment secret), half an identity mark (key from
the secret and the caller's identity id), so a detector holding the secret can
test any text for the mark and name the account it was served to.

Modules, one concept each:

- `table`   the substitution table and its loader;
- `scan`    positions and protected spans (the I/O-free scanner);
- `keys`    key derivation and the keyed choice at a position;
- `marker`  `Watermarker.mark()` and the streaming `StreamMarker`;
- `detect`  `Detector`: z-scores and p-values, attribution among identities;
- `stats`   the one-proportion z-test;
- `report`  the `distill-guard watermark detect` command's output.

See docs/watermark.md for how it works and how well.
"""

from gateway.watermark.detect import (
    ATTRIBUTION_ALPHA,
    DETECTION_Z,
    Attribution,
    Detection,
    Detector,
)
from gateway.watermark.marker import StreamMarker, Watermarker
from gateway.watermark.stats import Score
from gateway.watermark.table import Table, VariantSet, default_table

__all__ = [
    "ATTRIBUTION_ALPHA",
    "DETECTION_Z",
    "Attribution",
    "Detection",
    "Detector",
    "Score",
    "StreamMarker",
    "Table",
    "VariantSet",
    "Watermarker",
    "default_table",
]
