"""obserae-forensics: replay NetFlow/IPFIX captures and nfcapd files into sessions offline.

The public API, listed explicitly; the CLI (`obserae-forensics`) is a thin layer over it.
"""

from __future__ import annotations

__version__ = "0.2.0"

__all__ = ["__version__"]
