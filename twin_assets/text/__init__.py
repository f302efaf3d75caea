"""Text conventions shared by crawling and features (markdown, tracking parameters, repository
file names), written once so the two stages cannot drift apart.

It sits below the logic packages and above `twin_assets.domain`, the only package it imports.
"""
