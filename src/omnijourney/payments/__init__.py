"""Payments: providers behind one interface, tenders of an order (split tender), gift cards and cash.

No card data is ever stored: only a provider's token or payment-method id (and brand/last4 when a provider returns
them). A call to a provider is external I/O, made with no database transaction of ours open (see ``service``).
"""
