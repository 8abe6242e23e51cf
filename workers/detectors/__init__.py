"""Face detectors behind one protocol, with the model files they load."""
