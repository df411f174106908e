terraform {
  required_version = ">= 1.5.7"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6"
    }
  }

  # terraform init -backend-config=../../envs/<env>/backend-data.hcl
  backend "s3" {}
}

provider "aws" {
  region = var.region
}
