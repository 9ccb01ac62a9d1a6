"""Lamina's Python runtime bootstrap: `python3.11 /var/runtime/bootstrap.py` inside the sandbox.

The runtime itself is `lamina_runtime.py`, next to this script (the first entry of `sys.path`): a
script is compiled from source on every start, an imported module is loaded from the bytecode the
worker compiled at start-up.
"""
import lamina_runtime

lamina_runtime.main()
