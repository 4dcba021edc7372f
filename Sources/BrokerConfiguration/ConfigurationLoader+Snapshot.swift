extension ConfigurationLoader {
    /// Parses the configuration text a supervisor validated and handed to its children: relative paths resolve as
    /// in the original file, and files are not checked again (the supervisor did that).
    public static func parseSnapshot(
        _ text: String, originalPath: String
    ) throws(ConfigurationErrors) -> GatehouseConfiguration {
        try parse(
            text, displayPath: originalPath, baseDirectory: PathNormalizer.parent(of: PathNormalizer.absolute(originalPath)),
            options: ConfigurationLoadOptions(checkFiles: false))
    }
}
