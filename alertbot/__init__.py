"""alertbot: price alerts for Binance USD-M futures mini tickers."""

__version__ = "0.1.0"
