"""Thin asyncio adapters that pump the tunnel core over websockets."""
