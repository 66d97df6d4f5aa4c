"""Tools that playbooks call: built-in computations (and, later, HTTP tools)."""

from pipeline.tools.builtin import BUILTIN_TOOLS, BuiltinTool, ToolContext

__all__ = ["BUILTIN_TOOLS", "BuiltinTool", "ToolContext"]
