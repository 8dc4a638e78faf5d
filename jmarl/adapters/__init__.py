"""Adapters to and from other ecosystems: ``jmarl.adapters.jaxmarl`` (JaxMARL's dict API, both ways, and the
``jaxmarl:NAME`` environments) and ``jmarl.adapters.pettingzoo`` (PettingZoo's ParallelEnv, both ways);
``jmarl.adapters.teams`` groups named agents into teams for both. Import the submodule you need; importing
this package loads no third-party library. What runs and how it is tested: docs/interop.md."""
