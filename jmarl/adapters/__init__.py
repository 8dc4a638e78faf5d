"""Adapters to and from other ecosystems: ``jmarl.adapters.jaxmarl`` (JaxMARL's dict API, both ways).
Import the submodule you need; importing this package loads no third-party library."""
