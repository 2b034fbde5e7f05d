"""facewarden: guards a Linux session with its owner's face."""

__version__ = "0.1.0"
