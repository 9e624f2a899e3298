"""The asyncio actor layer between the Microgrid API and the control logic."""
