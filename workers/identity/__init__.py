"""Who is who: face embeddings, tracking across sampled video frames, and persons de-duplicated across frames."""
