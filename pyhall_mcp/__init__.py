"""pyhall-mcp: the Worker Class Protocol as an MCP governance gateway."""

__version__ = "0.1.0"
__wcp_version__ = "0.1"
