"""Face shape: MediaPipe FaceMesh + Iris turned into Tencent AnalyzeFace's 90 points."""
