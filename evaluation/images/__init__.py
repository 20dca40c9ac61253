"""Fidelity and privacy checks a synthetic image set must pass before export.

`evaluation.suite` runs their parts (`IMAGE_PARTS`) and writes the report. Features come
from a small CNN fitted on the real train images (no download); see `features.py`.
"""

from evaluation.images.evaluate import ImageEvaluation, evaluate_images, image_gate
from evaluation.images.features import FeatureExtractor
from evaluation.images.report import write_image_report

__all__ = [
    "FeatureExtractor",
    "ImageEvaluation",
    "evaluate_images",
    "image_gate",
    "write_image_report",
]
