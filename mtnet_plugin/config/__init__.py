"""mtnet_plugin.config"""
