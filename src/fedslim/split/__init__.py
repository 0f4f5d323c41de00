"""Split inference: a weak device runs the first blocks, a server the rest."""
