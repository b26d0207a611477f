from django.apps import AppConfig


class RetentionConfig(AppConfig):
    name = "retention"
    verbose_name = "Retention and rights"

    def ready(self) -> None:
        # The Art. 30 records of processing name the retention that applies to each data use.
        from consent.check_selectors import records_of_processing_register
        from retention.selectors import retention_for_purpose

        records_of_processing_register(
            lambda data_use: {"retention": retention_for_purpose(data_use.purpose)}
        )
