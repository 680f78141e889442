"""autoblock: time-limited blocking of attacker addresses in VPC Network ACLs.

Layers (each imports only the ones below it):

* ``handlers``: Lambda entry points; decorators plus one call.
* ``logic``: the rules of the domain. ``addresses``, ``slots`` and ``clock`` are pure;
  ``lifecycle`` drives a block through its states through the data-access objects it is given.
* ``dal``: the only code that talks to DynamoDB, EC2 and Step Functions.
* ``models`` and ``errors``: pydantic models and named domain errors. An error's class name is
  the contract with the state machine's Retry and Catch clauses.
"""
