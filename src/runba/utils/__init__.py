"""runba.utils"""
