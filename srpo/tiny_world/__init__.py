"""The tiny world: a synthetic captioned image world that trains and fine-tunes on a CPU."""
