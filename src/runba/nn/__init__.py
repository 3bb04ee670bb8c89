"""runba.nn"""
