"""factorkit: matrix factorization research toolkit."""

__version__ = "0.1.0"
