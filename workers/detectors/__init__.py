"""Face detectors: the local models (YuNet, BlazeFace), their fusion and tiling, upstream face APIs, and routing."""
