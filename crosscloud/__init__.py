"""crosscloud: one Azure managed identity for Azure Blob Storage and AWS S3.

A plain library (no azure.functions import anywhere in it): the Function App's blueprints,
the CLI and the tests all call the same code.
"""

__version__ = "0.1.0"
