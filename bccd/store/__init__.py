"""Storage: engine and transactions (db), typed models, blobs."""
