"""Faces: detection (MTCNN for photos, an OpenCV cascade for anime art), 5-point alignment,
paste-back into the photo, and the `twingan prep` face tools (crops, cat crops, de-duplication).

The alignment used to make training crops (:func:`face_alignment_transform`)
is the one translation uses, so a translated face can be warped back into its
photo with :func:`paste_back`.
"""
from twingan.faces.align import (
    apply_transform,
    face_alignment_transform,
    invert_transform,
    paste_back,
    warp_to_crop,
)
from twingan.faces.detect import Face, FaceDetector

__all__ = [
    "Face",
    "FaceDetector",
    "apply_transform",
    "face_alignment_transform",
    "invert_transform",
    "paste_back",
    "warp_to_crop",
]
