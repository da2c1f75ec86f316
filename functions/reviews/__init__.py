"""The reviews function."""
