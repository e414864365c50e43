"""mtnet_plugin.data"""
