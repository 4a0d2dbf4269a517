"""What an operator watches: Prometheus metrics (`metrics`, one registry per process, bounded
labels), the counts services report to it (`events`, which imports nothing), and structured logs
(`logs`: `ADAPTERS_LOG_FORMAT=json`, secrets redacted)."""
