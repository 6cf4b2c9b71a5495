"""jupyterhub-lab-ext: turn a plain JupyterHub into a complete multi-user lab server."""

__version__ = "0.1.0"

__all__ = ["__version__"]
