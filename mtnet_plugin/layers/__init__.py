"""mtnet_plugin.layers"""
