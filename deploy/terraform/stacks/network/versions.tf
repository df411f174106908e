terraform {
  required_version = ">= 1.5.7"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0"
    }
  }

  # terraform init -backend-config=../../envs/<env>/backend-network.hcl
  backend "s3" {}
}

provider "aws" {
  region = var.region
}
