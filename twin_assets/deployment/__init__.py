"""Deployment of a gated model version and its retrieval index to a serving target (the local
inference service, or SageMaker), and the promotion that follows a successful smoke request."""
