"""Runtimes and model files: locating the dlib models shipped by ``face_recognition_models``,
and (``onnx`` backend) converting dlib's networks to ONNX, cached in the user cache dir."""
