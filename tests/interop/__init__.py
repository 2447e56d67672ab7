"""Interoperability tests: the stock Node client/server of @prsm/realtime against ours."""
