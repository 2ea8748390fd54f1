"""Chat integration: the OpenAI-compatible HTTP server (`app`: routes; `guards`; `openai`:
payload models), the MCP server (`mcp`) and the web chat page (`web/`)."""
