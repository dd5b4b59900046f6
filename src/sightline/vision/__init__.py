"""The face engine: stateless, no storage, no HTTP.

Stages, each one small interface with one verb:
``FaceDetector.detect(image) -> Faces`` → ``Landmarker.landmarks(image, faces) -> Faces`` (with kps)
→ ``align.chips(image, faces) -> (N, 150, 150, 3)`` → ``Embedder.embed(chips) -> (N, D)``.
``FaceEngine`` chains them; ``quality.assess`` scores each face.
"""
