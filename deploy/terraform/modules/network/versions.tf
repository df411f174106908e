terraform {
  # Ephemeral resources and write-only arguments (1.11): no generated secret in any state.
  required_version = ">= 1.11"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0"
    }
  }
}
