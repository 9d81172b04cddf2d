"""The ingestor's HTTP side: the RSGI app, the async endpoints, HTTP <-> envelope mapping, granian."""
