"""A stdio test origin with 150 tools, to exercise pagination. Run: python -m tests.origins.many_tools"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

server = MCPServer("many")


def _make(index: int) -> None:
    def tool() -> str:
        return f"tool {index}"

    server.add_tool(tool, name=f"tool_{index:03d}", description=f"test tool number {index}")


for number in range(150):
    _make(number)

if __name__ == "__main__":
    server.run()
