"""The pure core of alertbot's rules: condition language, rule files, evaluation engine.

Nothing in this package imports asyncio, networking or Telegram code, or reads a clock.
"""
