"""Server-side aggregation strategies, one algorithm per file, on Flower's strategy API."""
