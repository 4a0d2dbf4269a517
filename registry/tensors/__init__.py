"""The worker's maths: the only package that imports torch."""
