"""Deployment: `deployed_endpoint` per author, the last asset of the card."""
