"""Paths as code, both directions: render the roles a chain file declares as Terraform,
CloudFormation or IAM JSON (:mod:`rolechain.ascode.render`), and review what a change to a
chain file does to access (:mod:`rolechain.ascode.review`)."""
