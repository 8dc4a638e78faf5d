"""Test-wide settings: the CLI's persistent compilation cache stays off (tests must not write into the user's
cache directory; tests/test_compare.py's cache test turns it on in a temporary directory)."""
import os

os.environ.setdefault("JMARL_COMPILE_CACHE", "0")
