"""runba.utils.data"""
