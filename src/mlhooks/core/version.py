"""The version of the mlhooks distribution."""

VERSION = "0.1.0"
