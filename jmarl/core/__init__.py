"""What an environment author needs: the environment API (``Environment``, ``Team``, ``TimeStep``), spaces,
the render scene an env hands the renderer (``scene.Scene``),
the registry (``make``, ``register``), wrappers and typed configuration. Imports nothing else of jmarl."""
